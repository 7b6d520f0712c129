"""Fits: models of an ESD's tail and bulk, each a function of a 1-D array of eigenvalues.

Modules
-------
powerlaw
    The power-law fit over every xmin candidate (:func:`hts_fast.fit_powerlaw`,
    ``csrc/cpu/powerlaw.cpp``).
truncated, tpl_search
    The truncated power law at a fixed xmin, and with its xmin chosen (``fit="TPL"`` and
    ``"E_TPL"``; ``csrc/cpu/tpl.cpp``, ``special.cpp``).
alternatives
    Exponential and lognormal tails (``csrc/cpu/exponential.cpp``).
compare
    Likelihood-ratio tests of the power law against those alternatives.
curves
    Every xmin candidate's fit as a table (:func:`hts_fast.fit_curves`).
bootstrap
    Bootstrap confidence intervals of alpha (:func:`hts_fast.bootstrap_alpha`).
marchenko_pastur
    The Marchenko-Pastur bulk fit and the detX constraint.

Nothing here knows about models or layers: that is :mod:`hts_fast.analysis`.
"""
