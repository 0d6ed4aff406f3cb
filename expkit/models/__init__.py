"""Model building: YAML spec -> keras.Model."""
