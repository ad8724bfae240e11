"""The data contract, the dataset build and the tensors and loaders training reads."""
