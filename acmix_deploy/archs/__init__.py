"""Network families: one file each (ResNet, Swin), with a pluggable mixing block."""
