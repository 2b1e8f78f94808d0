"""StyleGAN2 backbone (rosinality/stylegan2-pytorch layout). Implementation in progress."""
