"""The noise classifier: learn from labeled alerts and analyst verdicts, suppress noise with a recall guarantee.

    features.py   the versioned feature set (FEATURE_VERSION) and the batch extractor
    history.py    streaming state: per tenant+source history, per tenant rule frequencies (plain mappings)
    train.py      labeled data (labels.jsonl, verdicts.jsonl), deterministic split, model selection, threshold
    metrics.py    the core's dedup view, the split-conformal recall threshold, noise / FN rates
    model.py      NoiseClassifier (the core's `classifier=` hook) and its manifest on disk
    scope.py      what a model may judge (known product, rules and feature ranges)
    guardrails.py what it may never suppress (P1/P2 use cases, intel hits, unblocked exploits)
    explain.py    per-alert feature contributions (linear: exact; trees: Saabas path attribution)
    evaluate.py   held-out figures beside the CRS anomaly-score baseline, report and figures (plots.py)
    cli.py        `mdr model train|evaluate`
"""
