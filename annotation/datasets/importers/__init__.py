"""Importers: parse and validate every record of a file (with file:line errors) and write it
through ``annotation.services`` in one transaction — a bad record writes nothing."""
