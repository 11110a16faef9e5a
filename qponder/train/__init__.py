"""qponder.train"""
