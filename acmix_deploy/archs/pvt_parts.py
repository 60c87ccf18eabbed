"""PVT / PVT-ACmix part names for the profile's block classifier (bench/naming.py reads `PARTS`).

Stage I of a PVT attention is q plus the spatial reduction and kv that produce k and v (sr, norm, kv);
the attention path is `attention` (deploy form); the conv path is fc / dep_conv / conv_path, already
known to the classifier. No torch import: profiling an ONNX file needs none.
"""

from acmix_deploy.archs.family import Parts

PARTS = Parts(stage1=("q", "kv", "sr", "norm"))
