"""Network families: one file each (resnet, swin, san, pvt) that assembles the network from the blocks in
acmix_deploy/nn/ and registers its family (archs/family.py); torch-free part names in <family>_parts.py."""
