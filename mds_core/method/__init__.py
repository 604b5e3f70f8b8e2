"""The method: what the paper describes, and nothing else.

* :mod:`~mds_core.method.geometry`: back-projection, projection (eqs. 4-5) and SE(3) transforms;
* :mod:`~mds_core.method.networks`: the depth network and the pose+mask network (Fig. 2, Table 7);
* :mod:`~mds_core.method.decomposition`: the K-component motion model (eqs. 3 and 6);
* :mod:`~mds_core.method.warping`: view synthesis by inverse warping (eq. 7);
* :mod:`~mds_core.method.losses`: Monodepth2's photometric and smoothness objective;
* :mod:`~mds_core.method.model`: the networks composed into one model.
"""
