"""Files fastgen uses: shipped ones beside this module (``digits_classifier.msgpack``) and the
standard weights that ``python -m fastgen.assets fetch NAME...`` downloads into the cache
(:mod:`fastgen.assets.fetch`)."""
