"""Importers: parse a file completely (validating every record, with file:line errors), then
write through ``annotation.services`` in one transaction — a bad record writes nothing."""
