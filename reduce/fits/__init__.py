"""The project's FITS code: no astropy on the paths of a run or a reduction.

* :mod:`reduce.fits.cards`: cards and headers, parsed and formatted
  (FITS 4.0, sections 4.1-4.2), and the one policy for outside text.
* :mod:`reduce.fits.checksum`: DATASUM and CHECKSUM (appendix J).
* :mod:`reduce.fits.reader`: :class:`~reduce.fits.reader.FitsFile`, the one
  reader: every size a header declares checked against the file first.
* :mod:`reduce.fits.writer`: image headers and whole-image writes.

A master written band by band goes through :mod:`reduce.productfile`; the
raw frame's contract is :mod:`reduce.rawframe`. astropy is the tests'
oracle for everything written and read here.
"""
