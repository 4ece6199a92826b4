mysql:
  server: {enabled: true}
