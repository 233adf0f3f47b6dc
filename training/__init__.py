"""fvdeploy.training: datasets, the Move4 generator and the trainer."""
