"""Export row shaping: pure Python (no Django), fed plain records by ``datasets.loaders``.

* ``records``: the plain inputs (``TaskContent``, ``JudgmentRecord``, ``DemoRecord``) and options;
* ``pairs``: K-way orderings (buckets, best first) → preference pairs (all / best-vs-rest /
  adjacent), tie handling and consensus orderings (majority, Bradley–Terry);
* ``rows``: TRL preference (conversational / text, explicit / implicit prompt) with ``margin``
  and provenance columns, KTO, K-way rankings, SFT ``messages`` and raw judgments;
* ``summary``: per-annotator counts and the discretion summary a snapshot records;
* ``writers``: JSONL and Parquet (row groups) writers that hash what they write; CSV cells
  for streamed exports (nested values as JSON, a spreadsheet formula guard);
* ``pseudonyms``: stable HMAC annotator ids.
"""
