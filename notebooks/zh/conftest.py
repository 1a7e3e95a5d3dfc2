"""The Chinese notebooks are not run by nbval: their code cells and outputs are the English
notebooks' (tests/test_translations.py checks that they are identical), so nbval's run of the
English notebooks checks them too."""

collect_ignore_glob = ["*.ipynb"]
