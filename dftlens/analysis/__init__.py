"""Logit lens, language token sets, linear probes and the layer choice."""
