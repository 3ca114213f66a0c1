"""Networks, experts and likelihoods. Networks compute no loss."""
