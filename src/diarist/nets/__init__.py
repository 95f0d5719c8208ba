"""Neural networks whose pretrained weights diarist loads (see ``diarist.models``)."""
