"""The test kit: fixtures and builders the test modules share, registered in tests/conftest.py.

    models.py    tiny_base (session), random_gpt2, make_model_dir
    posting.py   trained_models (a tiny model trained once per session), clock, posting_settings, RecordingSleep
"""
