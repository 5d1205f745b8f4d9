"""The demo's data: scripted annotator personas (``personas``, pure) and the seed (``seed``)."""
