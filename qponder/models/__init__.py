"""Loading chat VLMs and their processors; the tiny offline model lives in ``qponder.models.tiny``."""
