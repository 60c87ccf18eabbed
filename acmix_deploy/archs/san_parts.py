"""SAN's block parts for the profile classifier (bench/naming.py reads `PARTS`): the weight network and
the aggregation are parts of their own (stage I and the conv path use the core names conv1-3, fc,
dep_conv, conv_path).

Reference SAN models name the weight network `conv_w` (hszhao/SAN); the deploy form (nn/san_deploy.py)
has `weight_net` and `aggregation` children, so exported node names carry them.
"""

from acmix_deploy.archs.family import Parts

WEIGHT_NET = "weight_net"
AGGREGATION = "aggregation"

PARTS = Parts(categories={
    WEIGHT_NET: ("weight net", ("weight_net", "conv_w")),
    AGGREGATION: ("aggregation", ("aggregation",)),
})
