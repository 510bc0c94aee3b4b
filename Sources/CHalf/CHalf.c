// Header-only: see include/CHalf.h. SwiftPM needs one source file per C target.
