"""fedsim's Flower apps: the ServerApp (the scenario's strategy inside the auditor), the
ClientApp (training with the defenses), and both halves of secure aggregation."""
