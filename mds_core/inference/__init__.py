"""Running a trained model: the :class:`~mds_core.inference.predictor.Predictor` on frame pairs,
:mod:`~mds_core.inference.streaming` around it for a live camera, and
:mod:`~mds_core.inference.sequence` over a sequence folder (``mds infer``)."""
