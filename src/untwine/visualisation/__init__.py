"""Pictures of datasets and models: image grids, dataset overviews, latent traversals (PNG output).

Everything here takes and returns plain numpy arrays (HWC images, float in [0, 1] or uint8), so the
report and the CLI can reuse the helpers without touching torch.
"""
