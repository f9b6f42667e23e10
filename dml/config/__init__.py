"""From a composed Hydra config to built objects: checks first, then construction."""
