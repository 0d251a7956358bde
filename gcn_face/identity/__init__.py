"""Identity (face-recognition) networks: a TensorFlow port of dlib's ResNet, FaceNet loader."""
