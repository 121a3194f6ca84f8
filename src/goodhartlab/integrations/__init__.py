"""Instrument training loops you already have: TRL / transformers Trainer callbacks."""
