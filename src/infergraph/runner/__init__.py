"""The embedded default: run an InferenceGraph on one machine with MLServer and a local router."""
