"""qponder.evaluation"""
