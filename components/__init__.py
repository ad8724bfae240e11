"""KFP v2 components of the CPFD pipeline: one file per step, each a thin wrapper around ``cpfd``.

Helpers the component bodies import at run time live in ``cpfd.components.common``; the image in
``cpfd.components.image``.
"""
