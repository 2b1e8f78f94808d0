"""BigGAN backbone (pytorch-pretrained-BigGAN layout). Implementation in progress."""
