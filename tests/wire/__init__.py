"""Wire conformance: proto/ against the Flame v0.4 wire page, and our codec against Google's."""
