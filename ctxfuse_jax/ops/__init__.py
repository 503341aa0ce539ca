"""Operations XLA does not run well on some platform, reformulated so it does."""
