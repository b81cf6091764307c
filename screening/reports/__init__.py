"""The structured report of an exam (issue 24): its final decision per breast, the findings in lexicon words."""
