"""Pictures of datasets, trained runs and their results, written as PNG and GIF files.

``images`` (grids, PNG files, the dataset overview) and ``annotate`` (text on pictures) work on numpy
arrays; ``traversals`` and ``animations`` decode codes with a trained model (reconstructions, prior
samples, latent traversals, the five animated latent cycles); ``curves`` and ``metric_plots`` draw
training logs and metric matrices with matplotlib on the pyplot-free figures of ``figures``;
``run_visuals.visualise_run`` writes all of them for one run.  Nothing here changes process-wide state:
no matplotlib backend is selected and no random draw uses a global generator.
"""
