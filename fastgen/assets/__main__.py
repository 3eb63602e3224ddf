"""``python -m fastgen.assets fetch inception lpips-vgg``: see :mod:`fastgen.assets.fetch`."""

from fastgen.assets import fetch

if __name__ == '__main__':
  fetch.main()
