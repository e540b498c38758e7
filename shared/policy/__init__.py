"""What an agent may spend: the limits type and the one definition of outcomes and decline reasons."""
