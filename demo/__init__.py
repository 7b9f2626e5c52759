"""The embedded demo: the synthetic corpus and the small models the pipeline runs on when no real data is given.

Nothing here is a pipeline stage: `python -m demo synth` writes a corpus in the real AN4 / LibriSpeech
layouts and `python -m demo train FAMILY` writes a model in its family's real checkpoint format, so the
stages read both exactly as they read real ones. Like a stage, demo/ imports only core/ and families/.
"""
