"""The core: alerts in, incidents out — the stages in order.

`hooks` (the Classifier / Enricher / Prioritizer interfaces), `dedup` (repeats merge into a representative),
`incidents` (use-case matches become incidents with deterministic ids), `fusion` (incidents of one attack fuse),
`engine` (`Core`: drives the stages with explicit, per-tenant state). Adapters (`pipeline.replay`,
`pipeline.stream`, the tests) assemble it with `pipeline.assemble.build_core`.
"""
