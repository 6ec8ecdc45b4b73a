"""Reports: tables of our numbers (beside the paper's), and PNG plots."""
