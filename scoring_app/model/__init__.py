"""The model: ``interface.Model`` (what the service and the batcher rely on),
``savedmodel.ScoringModel`` (a TensorFlow SavedModel behind it), ``images``
(checks and decodes with Pillow). TensorFlow is imported only in
``ScoringModel.load``, in workers."""
