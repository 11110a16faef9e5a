"""qponder.distill"""
