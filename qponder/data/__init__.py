"""qponder.data"""
