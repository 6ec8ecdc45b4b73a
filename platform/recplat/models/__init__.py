"""Models: LLM-Rec's text dual encoder and the ID-based baselines (SASRec, GRU4Rec)."""
