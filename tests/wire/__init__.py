"""Wire conformance: proto/<wire>/ against each Flame wire page, and our codecs against Google's."""
