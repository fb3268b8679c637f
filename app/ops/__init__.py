"""Operations: API keys, topic administration, logging."""
