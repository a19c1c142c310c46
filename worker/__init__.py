"""The compute side: job execution plus the diffusion library in `worker.diffusion`."""
