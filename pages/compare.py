"""Compare: 2 to 20 runs side by side (curves, final metrics, per-class changes vs a baseline,
head / medium / tail, settings). The selection and chart choices live in the URL:

    /compare?runs=ID1,ID2,ID3&baseline=ID1&metric=val/bal_acc&x=epoch&smooth=0
"""
from dashboard import compare_ui

compare_ui.page()
