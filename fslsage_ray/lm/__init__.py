"""Text generation from a trained split language model, and the E2E NLG metrics.

- :mod:`.beam_search`: deterministic beam search over any ``(ids, mask) -> logits`` function,
  batched over prompts (the split model's client part then server part is one such function);
- :mod:`.e2e_metrics`: BLEU, NIST and ROUGE-L of generated texts against several references;
- :mod:`.generate`: ``fslsage-ray generate RUN_DIR``: a run folder's checkpoint, every test
  meaning representation decoded, ``predictions.txt`` and ``generation.json`` written.
"""
