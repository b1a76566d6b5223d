"""An example CGGM Monitor plugin: the `toy_rings` dataset and the `gated_mlp` model.

The modules the entry points name (`rings`, `gated`) import no torch: the backend reads the
catalog from them. torch is imported inside `ToyRings.load` and in `gated_net`, which
`GatedMLP.build` imports when a run starts on a worker.
"""
