"""LLM judges and principle oracles as jobs: backends (an OpenAI-compatible endpoint or a
registered model on a worker), versioned templates, and jobs whose answers become a model
annotator's judgments and principle verdicts (issue 19)."""
